"""Plans dictionaries in the official nnU-Net/nnInteractive format, for the project's own models."""

from __future__ import annotations

from typing import Any, Sequence

_DNA_CLASS = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"


def make_plans(
    features: Sequence[int],
    blocks: Sequence[int],
    patch_size: Sequence[int],
    *,
    kernel_size: int = 3,
    strides: Sequence[Sequence[int]] | None = None,
    decoder_convs: int | Sequence[int] = 1,
    conv_bias: bool = True,
    configuration: str = "3d_fullres",
    dataset_name: str = "Dataset000_NNIWidget",
    batch_size: int = 2,
) -> dict[str, Any]:
    """A plans dict in the official format for a residual-encoder UNet of the given size.

    Args:
        features: Channels per stage, e.g. ``(8, 16, 32, 32)``.
        blocks: Residual blocks per stage (same length as ``features``).
        patch_size: Training/inference patch ``(z, y, x)``; each edge must be divisible by the
            product of the strides.
        kernel_size: Conv kernel edge of every stage.
        strides: Stride per stage; default 1 for the first stage and 2 for the others.
        decoder_convs: Conv units per decoder stage.
        conv_bias: Conv bias (the official model uses it).
        configuration: Name of the single configuration in the plans.
        dataset_name: Recorded dataset name.
        batch_size: Recorded batch size.

    Returns:
        The plans dict; build with ``build_network_from_plans(plans, configuration)``.

    Raises:
        ValueError: Inconsistent lengths or a patch not divisible by the total stride.
    """
    n = len(features)
    if len(blocks) != n:
        raise ValueError(f"blocks needs {n} entries (one per stage), got {len(blocks)}")
    if len(patch_size) != 3:
        raise ValueError(f"patch_size must have 3 entries, got {patch_size}")
    stride_list = (
        [[1, 1, 1]] + [[2, 2, 2]] * (n - 1) if strides is None else [list(map(int, s)) for s in strides]
    )
    if len(stride_list) != n:
        raise ValueError(f"strides needs {n} entries, got {len(stride_list)}")
    for axis in range(3):
        total = 1
        for s in stride_list:
            total *= s[axis]
        if patch_size[axis] % total:
            raise ValueError(
                f"patch edge {patch_size[axis]} (axis {axis}) is not divisible by total stride {total}"
            )
    dec = (
        [int(decoder_convs)] * (n - 1) if isinstance(decoder_convs, int) else [int(c) for c in decoder_convs]
    )
    arch_kwargs = {
        "n_stages": n,
        "features_per_stage": [int(f) for f in features],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[kernel_size] * 3 for _ in range(n)],
        "strides": stride_list,
        "n_blocks_per_stage": [int(b) for b in blocks],
        "n_conv_per_stage_decoder": dec,
        "conv_bias": bool(conv_bias),
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    }
    patch = [int(p) for p in patch_size]
    return {
        "dataset_name": dataset_name,
        "plans_name": "nnUNetResEncUNetPlans_noResampling",
        "original_median_spacing_after_transp": [1.0, 1.0, 1.0],
        "original_median_shape_after_transp": patch,
        "image_reader_writer": "NibabelIOWithReorient",
        "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {
            configuration: {
                "data_identifier": f"nnUNetPlans_{configuration}",
                "preprocessor_name": "DefaultPreprocessor",
                "batch_size": int(batch_size),
                "patch_size": patch,
                "median_image_size_in_voxels": patch,
                "spacing": [1.0, 1.0, 1.0],
                "normalization_schemes": ["ZScoreNormalization"],
                "use_mask_for_norm": [False],
                "resampling_fn_data": "resample_data_or_seg_to_shape",
                "resampling_fn_seg": "resample_data_or_seg_to_shape",
                "resampling_fn_data_kwargs": {
                    "is_seg": False,
                    "order": 3,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "resampling_fn_seg_kwargs": {
                    "is_seg": True,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                "resampling_fn_probabilities_kwargs": {
                    "is_seg": False,
                    "order": 1,
                    "order_z": 0,
                    "force_separate_z": None,
                },
                "architecture": {
                    "network_class_name": _DNA_CLASS,
                    "arch_kwargs": arch_kwargs,
                    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
                },
                "batch_dice": False,
            }
        },
        "experiment_planner_used": "nnUNetPlannerResEncL",
        "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {
            "0": {
                "max": 1.0,
                "mean": 0.0,
                "median": 0.0,
                "min": 0.0,
                "percentile_00_5": 0.0,
                "percentile_99_5": 1.0,
                "std": 1.0,
            }
        },
    }
