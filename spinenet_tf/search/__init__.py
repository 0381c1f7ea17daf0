"""Architecture search for scale-permuted networks (issue 13)."""

from spinenet_tf.search.space import InvalidCandidate, SearchSpace
