"""Network architectures. Every module follows one contract (like spandrel's descriptors):

* input: (N, C, h, w) float tensor in [0, 1], C = ``module.in_channels``;
* output: (N, C, h * module.scale, w * module.scale), unclamped (callers clamp);
* fully convolutional, any h, w >= 2; ``module.receptive_margin`` = how many
  input pixels around a tile are needed for tiled inference to match whole-image
  inference; networks that downsample also set ``module.tile_align`` (tiles must
  start at multiples of it).
"""

from .autoencoder import DenoisingAutoencoder
from .dncnn import DnCNN
from .edsr import EDSR
from .gated import GatedEnhancer
from .rrdbnet import RRDBNet
from .srcnn import SRCNN
from .srresnet import SRResNet
from .vdsr import VDSR

__all__ = ["DenoisingAutoencoder", "DnCNN", "EDSR", "GatedEnhancer", "RRDBNet", "SRCNN", "SRResNet", "VDSR"]
