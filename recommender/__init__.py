"""Stories understood: embedding, vector index, related blocks, profiles and feeds, evaluation.

May import aggregator; never api.
"""
