"""The pure measures: sample quality (Inception features, their statistics, FID and the rest) and training
progress (the denoising distance). Scoring a trained run against a data set is `cmzoo.scoring`."""
