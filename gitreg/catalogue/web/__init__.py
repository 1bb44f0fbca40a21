"""The web catalogue: a static site (HTML + JSON API files) and a small live server."""
