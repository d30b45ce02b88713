"""The VMAs network: temporal video encoder, music decoder with video cross-attention, and builders."""
