"""Everything that makes graph attention fast, behind one function, :func:`attend`.

* :mod:`~.dispatch`: :func:`attend`, the one door (and the one place a kernel is chosen);
* :mod:`~.structure`: edges sorted by target (CSR) and by source, cached per graph;
* :mod:`~.csr_torch`: adjacency attention by torch's sparse products, hand-written backward;
* :mod:`~.dense_torch`: full attention by size-bucketed dense products;
* :mod:`~.native`: autograd functions over the C kernels of ``csrc/``;
* :mod:`~.ops`: the C CSR and dense kernels as the torch custom operators
  ``graphattn::csr_attention`` and ``graphattn::dense_attention``;
* :mod:`~.build`: compile, cache, validate and load the C kernels.

Every kernel is proved equal to the layer's reference path by the tests. ``available()``
tells whether the C kernels run here; inside ``with disabled():`` the pure-torch kernels
run instead (to compare them).
"""

from graphattn.nn.kernels.build import available, disabled
from graphattn.nn.kernels.dispatch import Layer, attend

__all__ = ["Layer", "attend", "available", "disabled"]
