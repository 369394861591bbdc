"""The people we write to: subscribing, confirming, unsubscribing and who is in an audience."""
