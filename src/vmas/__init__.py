"""vmas: video-to-music generation with semantic and beat alignment, and the factory that trains it."""

__version__ = "0.1.0"
