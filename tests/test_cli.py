"""The command line: segment a NIfTI from prompts and write the mask on the input's grid."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from nni_widget.cli import main


def _write_oblique_nifti(path, image):
    affine = np.array([[0.0, 0.0, -1.5, 30.0], [0.9, 0.1, 0.0, -20.0], [0.0, 1.1, 0.0, 5.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(image.transpose(2, 1, 0)), affine), path)
    return affine


def test_segment_writes_a_mask_on_the_input_grid(tmp_path, tiny_model, blob_image, capsys):
    src = tmp_path / "image.nii.gz"
    affine = _write_oblique_nifti(src, blob_image)
    out = tmp_path / "mask.nii.gz"
    rc = main(["segment", "--image", str(src), "--model", str(tiny_model), "--point", "20,24,22",
               "--negative-point", "5,5,5", "--device", "cpu", "--no-autozoom", "--out", str(out)])
    assert rc == 0
    img = nib.load(out)
    assert img.shape == blob_image.transpose(2, 1, 0).shape
    assert np.allclose(img.affine, affine)
    assert img.get_fdata().max() <= 1
    assert "wrote" in capsys.readouterr().out


def test_segment_reports_bad_input_clearly(tmp_path, tiny_model, caplog):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    rc = main(["segment", "--image", str(bad), "--model", str(tiny_model), "--point", "1,1,1",
               "--out", str(tmp_path / "m.nii.gz")])
    assert rc == 1
    assert "broken.nii.gz" in caplog.text and "corrupt" in caplog.text
    with pytest.raises(SystemExit):
        main(["segment", "--image", str(bad), "--point", "1,2", "--out", "x.nii.gz"])


def test_segment_takes_a_refinement_margin_rule(tmp_path, tiny_model, blob_image, capsys):
    src = tmp_path / "image.nii.gz"
    _write_oblique_nifti(src, blob_image)
    masks = []
    for rule in ("official", "0"):
        out = tmp_path / f"mask_{rule}.nii.gz"
        assert main(["segment", "--image", str(src), "--model", str(tiny_model), "--box", "20:21,4:44,4:40",
                     "--device", "cpu", "--refine-margin", rule, "--out", str(out)]) == 0
        masks.append(np.asarray(nib.load(out).dataobj))
    assert masks[0].shape == masks[1].shape and masks[0].any()
    for bad in ("wide", "-2"):
        with pytest.raises(SystemExit):
            main(["segment", "--image", str(src), "--point", "1,2,3", "--refine-margin", bad, "--out", "x.nii.gz"])
    assert "expected scaled, official or a number of voxels" in capsys.readouterr().err


def test_info_shows_the_model_settings(tiny_model, capsys):
    assert main(["info", "--model", str(tiny_model)]) == 0
    out = capsys.readouterr().out
    assert "patch size: (32, 32, 32)" in out and "interaction decay: 0.9" in out
