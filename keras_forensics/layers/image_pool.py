"""The history of generated images that CycleGAN's discriminators train on."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_forensics")
class ImagePool(keras.layers.Layer):
    """A buffer of the last `pool_size` generated images (Shrivastava et al. 2017).

    Discriminators updated only on the newest fakes chase the generator round in circles; fed
    partly from a history, they remember earlier modes. `call(images)` returns a batch the same
    size as `images`: while the pool is not full, the images themselves (and they are stored);
    once full, each image is, with probability 1/2, swapped with a random stored image (which is
    returned in its place), else returned as is. All images of a batch are handled at once:
    every stored image that is returned is read before the batch's new images are written.
    The pool is layer state (non-trainable weights), so it is checkpointed and resumed.
    `pool_size=0` turns the pool off.

    Args:
        pool_size: number of stored images (50 in Zhu et al.'s CycleGAN).
        image_shape: (height, width, channels) of the images.
        swap_probability: chance that a new image is swapped for a stored one.
        seed: seed of the layer's random draws.

    Example:
        >>> pool = ImagePool(50, (64, 64, 1))
        >>> fakes_for_discriminator = pool(generator(images))

    Reference:
        Shrivastava et al. Learning from simulated and unsupervised images through adversarial
        training. CVPR 2017, section 2.3. Zhu et al., CycleGAN, ICCV 2017, section 4.
    """

    def __init__(self, pool_size=50, image_shape=(128, 128, 1), swap_probability=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = int(pool_size)
        self.image_shape = tuple(image_shape)
        self.swap_probability = swap_probability
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.images = self.add_weight(name="images", shape=(max(self.pool_size, 1),) + self.image_shape,
                                      initializer="zeros", trainable=False)
        self.count = self.add_weight(name="count", shape=(), initializer="zeros", dtype="int32",
                                     trainable=False)
        self.built = True

    def call(self, images):
        if self.pool_size == 0:
            return images
        images = tf.convert_to_tensor(images, self.images.dtype)
        batch = tf.shape(images)[0]
        stored = tf.convert_to_tensor(self.images)
        # Slots still empty are filled in order; the images that fill them come back unchanged.
        slot = self.count + tf.range(batch, dtype=tf.int32)
        filling = slot < self.pool_size
        swap = tf.logical_and(tf.logical_not(filling),
                              keras.random.uniform([batch], seed=self.seed_generator) < self.swap_probability)
        random_slot = keras.random.randint([batch], 0, self.pool_size, seed=self.seed_generator, dtype="int32")
        returned = tf.where(swap[:, None, None, None], tf.gather(stored, random_slot), images)
        target = tf.where(filling, slot, random_slot)
        write = tf.logical_or(filling, swap)
        self.images.assign(tf.tensor_scatter_nd_update(
            stored, tf.boolean_mask(target, write)[:, None], tf.boolean_mask(images, write)))
        self.count.assign(tf.minimum(self.count + batch, self.pool_size))
        return returned

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, image_shape=self.image_shape,
                      swap_probability=self.swap_probability, seed=self.seed)
        return config
