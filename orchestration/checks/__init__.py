"""One Great Expectations suite per stage output, and the runner that validates a manifest with it."""
