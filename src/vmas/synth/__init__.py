"""The embedded synthetic music-video set: picture and sound causally tied, with known stems."""

from vmas.synth.dataset import SynthReport, render_item, synthesize_dataset
from vmas.synth.plan import STYLES, ItemPlan, plan_item

__all__ = ["STYLES", "ItemPlan", "SynthReport", "plan_item", "render_item", "synthesize_dataset"]
