"""The sources of models, one module per family, tried in the order of
:data:`eigencam.models.registry.SOURCES`: each has ``entry(name)``, the
:class:`~eigencam.models.entry.ModelEntry` of a name it knows or None for another's (a typed
error for its own name that is unusable), and ``names()`` if it knows a fixed list of names.
Sources import :mod:`eigencam.models.entry`, never the registry.
"""
