"""``evaluate`` module folder for ARIG cIoU / AUC (a package only so installs ship it)."""
