"""Adversarial losses (Lu et al. AAAI 2022, eq. 11), in three common forms.

The paper writes L_adv = E[log D(I_t)] + E[log(1 - D(G(I_s, P_s, P_t)))]. All functions take
raw discriminator outputs (logits, any shape; averaged over every element, so patch outputs
work) and return float32 scalars to minimise:

| form            | discriminator                                  | generator                  |
|-----------------|------------------------------------------------|----------------------------|
| "nonsaturating" | softplus(-real) + softplus(fake)  (= eq. 11)   | softplus(-fake)            |
| "lsgan"         | (real - 1)^2 + fake^2                          | (fake - 1)^2               |
| "hinge"         | relu(1 - real) + relu(1 + fake)                | -fake                      |

"nonsaturating" is eq. 11 with sigmoid outputs and the usual non-saturating generator side;
"lsgan" is what GFLA's released training uses.
"""
from __future__ import annotations

import tensorflow as tf

GAN_LOSS_FORMS = ("nonsaturating", "lsgan", "hinge")
DEFAULT_GAN_LOSS_FORM = "nonsaturating"


def _check_form(form: str, function: str) -> None:
    if form not in GAN_LOSS_FORMS:
        raise ValueError(f"{function}: form must be one of {GAN_LOSS_FORMS}, got {form!r}")


def discriminator_adversarial_loss(
    real_logits: tf.Tensor, fake_logits: tf.Tensor, form: str = DEFAULT_GAN_LOSS_FORM
) -> tf.Tensor:
    """The discriminator's loss on real target images and generated ones."""
    _check_form(form, "discriminator_adversarial_loss")
    real = tf.cast(real_logits, tf.float32)
    fake = tf.cast(fake_logits, tf.float32)
    if form == "nonsaturating":
        return tf.reduce_mean(tf.nn.softplus(-real)) + tf.reduce_mean(tf.nn.softplus(fake))
    if form == "lsgan":
        return tf.reduce_mean(tf.square(real - 1.0)) + tf.reduce_mean(tf.square(fake))
    return tf.reduce_mean(tf.nn.relu(1.0 - real)) + tf.reduce_mean(tf.nn.relu(1.0 + fake))


def generator_adversarial_loss(fake_logits: tf.Tensor, form: str = DEFAULT_GAN_LOSS_FORM) -> tf.Tensor:
    """The generator's loss: make the discriminator call generated images real."""
    _check_form(form, "generator_adversarial_loss")
    fake = tf.cast(fake_logits, tf.float32)
    if form == "nonsaturating":
        return tf.reduce_mean(tf.nn.softplus(-fake))
    if form == "lsgan":
        return tf.reduce_mean(tf.square(fake - 1.0))
    return -tf.reduce_mean(fake)
