"""Every hyper-parameter of every experiment, as one frozen dataclass per experiment.

Rooms: `base` (save, load, replace: flags -> fields; the shared runtime checks), `deformation`
(the Siamese training manipulations), `siamese`, `descriptor` (the copy-detection descriptor), `detector`, `gan` (WGAN and CycleGAN), and
`presets` (named flag sets, some naming ../shared/data folders). Every public name is re-exported
here, so `from keras_forensics.config import SiameseTrainConfig` works as it always did.
"""

from keras_forensics.config.base import STRATEGIES, check_strategy, from_dict, load, replace, save, to_dict
from keras_forensics.config.deformation import DeformationConfig
from keras_forensics.config.descriptor import (DESCRIPTOR_BACKBONES, DESCRIPTOR_DEFORMATION, CopyAugmentConfig,
                                               DescriptorConfig, DescriptorTrainConfig)
from keras_forensics.config.detector import DetectorConfig, DetectorTrainConfig, RobustnessConfig
from keras_forensics.config.gan import CycleGANConfig, CycleGANTrainConfig, WGANConfig, WGANTrainConfig
from keras_forensics.config.presets import (CYCLEGAN_PRESETS, DESCRIPTOR_PRESETS, DETECTOR_PRESETS, SHARED_BLOT_GROUPS,
                                            SHARED_MICROGRAPH_GROUPS, SIAMESE_PRESETS, WGAN_PRESETS)
from keras_forensics.config.siamese import SiameseConfig, SiameseTrainConfig

__all__ = [
    "STRATEGIES", "check_strategy", "from_dict", "load", "replace", "save", "to_dict",
    "DeformationConfig", "DESCRIPTOR_BACKBONES", "DESCRIPTOR_DEFORMATION", "CopyAugmentConfig", "DescriptorConfig",
    "DescriptorTrainConfig", "DESCRIPTOR_PRESETS", "DetectorConfig", "DetectorTrainConfig", "RobustnessConfig",
    "CycleGANConfig", "CycleGANTrainConfig", "WGANConfig", "WGANTrainConfig",
    "CYCLEGAN_PRESETS", "DETECTOR_PRESETS", "SHARED_BLOT_GROUPS", "SHARED_MICROGRAPH_GROUPS",
    "SIAMESE_PRESETS", "WGAN_PRESETS", "SiameseConfig", "SiameseTrainConfig",
]
