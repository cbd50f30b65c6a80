"""Data modules.  Each exposes ``shape`` (C, H, W), ``num_classes``, ``is_image``, and the
``scale``/``unscale`` pair between data space and model space."""
