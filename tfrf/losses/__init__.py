"""Training losses, apart from the networks (Lu et al. AAAI 2022, sec. 3.3; GFLA).

- `VGGFeatures`: one frozen VGG19, called once per image (or once on a concatenated batch,
  cut apart with `split_features`); its feature dicts feed every VGG loss.
- `sampling_correctness_loss`, `affine_regularization_loss`: L_flow's two terms, per flow level
  (`CORRECTNESS_LAYERS` and `AFFINE_PATCH_SIZES` say which VGG layer and patch size go with
  the H/8 and H/4 flows); `photometric_loss`, an optional third (not in the paper) on pixels.
- `l1_loss`, `perceptual_loss`, `style_loss`: L_con's three terms; `saturation_loss`, an
  optional hinge on the output's pre-tanh values (not in the paper).
- `generator_adversarial_loss`, `discriminator_adversarial_loss`: L_adv in `GAN_LOSS_FORMS`.
Every loss casts its inputs to float32 and returns a float32 scalar averaged over the batch it
is given; under `tf.distribute`, divide by the number of replicas (equal per-replica batches).
"""
from tfrf.losses.adversarial import (
    DEFAULT_GAN_LOSS_FORM,
    GAN_LOSS_FORMS,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
)
from tfrf.losses.content import SATURATION_LIMIT, gram_matrix, l1_loss, perceptual_loss, saturation_loss, style_loss
from tfrf.losses.correctness import CORRECTNESS_LAYERS, sampling_correctness_loss
from tfrf.losses.photometric import photometric_loss
from tfrf.losses.regularization import AFFINE_PATCH_SIZES, affine_regularization_loss, affine_residual_matrix
from tfrf.losses.vgg import PERCEPTUAL_LAYERS, VGGFeatures, layer_name, layer_stride, split_features

__all__ = [
    "AFFINE_PATCH_SIZES",
    "CORRECTNESS_LAYERS",
    "DEFAULT_GAN_LOSS_FORM",
    "GAN_LOSS_FORMS",
    "PERCEPTUAL_LAYERS",
    "SATURATION_LIMIT",
    "VGGFeatures",
    "affine_regularization_loss",
    "affine_residual_matrix",
    "discriminator_adversarial_loss",
    "generator_adversarial_loss",
    "gram_matrix",
    "l1_loss",
    "layer_name",
    "layer_stride",
    "perceptual_loss",
    "photometric_loss",
    "sampling_correctness_loss",
    "saturation_loss",
    "split_features",
    "style_loss",
]
