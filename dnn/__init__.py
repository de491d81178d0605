"""The dnn language: a declarative spec for deep networks, compiled to Flax and Optax."""
