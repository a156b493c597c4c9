"""The baselines SpotTune is compared with, one module each; importing registers them."""
