"""Building blocks shared by the models: the VMAs losses."""
