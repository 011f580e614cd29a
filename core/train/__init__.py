"""``copylens train``: SSCD-style self-supervised training of CopyLens's own global descriptor.

Two strongly edited views of one image are positives, the rest of the batch are negatives (InfoNCE), with
SSCD's KoLeo entropy regulariser spreading the descriptors. Views come from the benchmark's edit library
(:mod:`copylens.core.edits`) with training's own edit weights. Modules: :mod:`.data` (images,
views, batches), :mod:`.model` (network, export), :mod:`.loss`, :mod:`.checkpoint`, :mod:`.trainer` (the
resumable generator job), :mod:`.evaluate` (validation and benchmark scoring), :mod:`.cli`.
"""
