"""``evaluate`` module folder for AVSS semantic segmentation (a package only so installs ship it)."""
