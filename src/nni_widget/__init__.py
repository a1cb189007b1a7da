"""nni_widget: nnInteractive-style 3D promptable segmentation in Jupyter."""

__version__ = "0.1.0"
