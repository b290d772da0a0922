"""The sources of models, one module per family, tried in the order of
:data:`eigencam.models.registry.SOURCES`.

A source is a module with ``entry(name) -> ModelEntry | None``: the
:class:`~eigencam.models.entry.ModelEntry` of a name it knows, None for a name that is not its
own (a typed error for a name that is its own but unusable: a missing file, an unknown timm
model). A source that knows a fixed list of names also has ``names()``, which feeds
:func:`~eigencam.models.registry.available_models`. Sources import
:mod:`eigencam.models.entry`, never the registry.
"""
