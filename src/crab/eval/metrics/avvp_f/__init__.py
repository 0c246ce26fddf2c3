"""``evaluate`` module folder for AVVP segment- and event-level F (a package only so installs ship it)."""
