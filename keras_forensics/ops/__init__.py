"""Pure TensorFlow ops, no Keras and no files: `spectrum` (FFT power spectra) and `tiling` (the
one patch grid and the detector's patch aggregation). Layers, data, serving and the CLI build on
these."""
