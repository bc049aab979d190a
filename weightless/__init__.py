"""weightless: lossy Bloomier-filter compression of neural-network weights.

After Reagen et al., "Weightless: Lossy Weight Encoding for Deep Neural Network Compression"
(ICML 2018): a pruned, clustered weight matrix is a sparse map position -> cluster index, stored
in a Bloomier filter that answers exactly for the kept weights and rarely (with a tunable
probability) reports a spurious one elsewhere.
"""

from ._core import FORMAT_VERSION
from .filter import BloomierFilter

__version__ = "0.1.0"
__all__ = ["BloomierFilter", "FORMAT_VERSION", "__version__"]
