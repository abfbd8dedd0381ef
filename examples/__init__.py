"""Small examples of bringing your own estimator or model (see README, "Adding an estimator")."""
