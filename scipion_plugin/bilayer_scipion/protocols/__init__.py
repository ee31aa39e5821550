"""The Bilayer protocols Scipion offers (found by the plugin's ``protocols`` module)."""

from bilayer_scipion.protocols.protocol_patches import ProtBilayerExtractPatches
from bilayer_scipion.protocols.protocol_preprocess import ProtBilayerPreprocess
from bilayer_scipion.protocols.protocol_segment import ProtBilayerSegment
from bilayer_scipion.protocols.protocol_skeleton import ProtBilayerSkeleton
from bilayer_scipion.protocols.protocol_surfaces import ProtBilayerSurfaces
from bilayer_scipion.protocols.protocol_train import ProtBilayerTrain

__all__ = ["ProtBilayerExtractPatches", "ProtBilayerPreprocess", "ProtBilayerSegment", "ProtBilayerSkeleton",
           "ProtBilayerSurfaces", "ProtBilayerTrain"]
