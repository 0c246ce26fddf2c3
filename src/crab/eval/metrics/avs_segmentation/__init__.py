"""``evaluate`` module folder for AVS / Ref-AVS binary segmentation (a package only so installs ship it)."""
