"""Bilayer as RELION External jobs: programs that translate STAR/MRC into engine calls.

* ``bilayer-relion-segment`` (:mod:`bilayer_relion.segment_job`): membrane masks for the
  tomograms of a RELION 5 tomogram set or a RELION 3.1/4 micrograph-style list;
* ``bilayer-relion-train`` (:mod:`bilayer_relion.train_job`): training or fine-tuning from
  tomograms and label volumes listed in a STAR file.

:mod:`bilayer_relion._job` owns RELION's External-job protocol (arguments, exit files, output
nodes, aborts) and :mod:`bilayer_relion.star` the STAR translation. The package holds no
numerical code: every number comes from the ``bilayer`` engine. User guides:
``protocols_docs/relion_segment.md`` and ``protocols_docs/relion_train.md``.
"""

from bilayer import __version__

__all__ = ["__version__"]
