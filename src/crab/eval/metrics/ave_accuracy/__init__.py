"""``evaluate`` module folder for AVE per-second accuracy (a package only so installs ship it)."""
