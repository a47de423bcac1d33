"""The web server (`tandem web`): the browser UI and, for local runs, an /api/ proxy."""
