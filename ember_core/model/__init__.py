"""EmberVLM: the composed vision-language model, its parts, tokenizer and weight loading."""
