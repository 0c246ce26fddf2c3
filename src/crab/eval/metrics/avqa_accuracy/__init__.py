"""``evaluate`` module folder for MUSIC-AVQA accuracy (a package only so installs ship it)."""
