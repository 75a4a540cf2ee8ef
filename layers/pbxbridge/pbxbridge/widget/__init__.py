"""The manager's widget: the live call card, the widget's own API and its page (its tokens: widget_tokens)."""
