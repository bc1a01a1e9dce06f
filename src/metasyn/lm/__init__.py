"""Language-model plumbing: model specs to (model, tokenizer), generation, prompt texts, reading answers.

Depends only on ``metasyn.questions`` (the question schema the prompts are written for).
"""
