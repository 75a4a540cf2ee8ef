"""The manager's widget: tokens, the live call card, the widget's own API and its page."""
