"""The catalogue users browse: search and the web catalogue over verified registry states.

``reader`` turns one verified registry state (a commit of a working copy, a
bare repository or a site's trusted state) into plain records, read from Git
objects only; ``status`` judges them at one reference time; ``search``
filters them; ``web`` renders them. Trust is decided by the verifier, never
here: the catalogue only reports its verdicts.
"""
