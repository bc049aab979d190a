"""weightless: lossy Bloomier-filter compression of neural-network weights.

After Reagen et al., "Weightless: Lossy Weight Encoding for Deep Neural Network Compression"
(ICML 2018): a pruned, clustered weight matrix is a sparse map position -> cluster index, stored
in a Bloomier filter that answers exactly for the kept weights and rarely (with a tunable
probability) reports a spurious one elsewhere.

    weightless.compress(state_or_path, "model.wl", sparsity=0.92, clusters=16, cell_bits=8)
    state = weightless.decompress("model.wl")
    layer = weightless.encode_layer(weights, sparsity=0.92, clusters=16, fp_rate=0.01)
"""

from ._core import FORMAT_VERSION
from ._native import get_cython_include, get_include, get_libraries, get_library_dirs
from .codec import EncodedLayer, encode_layer
from .container import compress, decompress, open_container
from .filter import BloomierFilter

__version__ = "0.1.0"
__all__ = [
    "BloomierFilter",
    "EncodedLayer",
    "FORMAT_VERSION",
    "__version__",
    "compress",
    "decompress",
    "encode_layer",
    "get_cython_include",
    "get_include",
    "get_libraries",
    "get_library_dirs",
    "open_container",
]
