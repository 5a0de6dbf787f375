"""Pure TensorFlow ops, no Keras and no files: `spectrum` (FFT power spectra), `fft_peaks` (the
patch FFT peaks of a denoising residual, the Cardenuto-Mandelli baseline's features) and `tiling`
(the one patch grid and the detector's patch aggregation). Layers, data, serving and the CLI build
on these."""
