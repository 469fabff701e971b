"""What the bridge tells about itself: metrics, log set-up, time spent per stage."""
