# install rules: see helper
