"""Tiny random models and hand-made training examples (data_prep's ``training_examples`` schema)."""

from __future__ import annotations

import torch
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from metasyn.lm.models import LanguageModel
from metasyn.lm.prompts import (
    assistant_message,
    confidence_completion,
    confidence_messages,
    pairwise_completion,
    pairwise_messages,
)
from metasyn.metacognition.judgment import judgment_messages
from tests.conftest import tiny_llama_config

# Training settings (trl.SFTConfig fields) small enough for a tiny model to learn in seconds.
TINY_TRAINING = {
    "num_train_epochs": 3,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 8,
    "learning_rate": 5.0e-3,
    "lr_scheduler_type": "constant",
    "max_length": 512,
    "completion_only_loss": True,
    "bf16": False,
    "activation_checkpointing": False,
    "eval_strategy": "epoch",
    "eval_on_start": True,
    "save_strategy": "epoch",
    "logging_steps": 1,
    "report_to": "none",
    "disable_tqdm": True,
}
TINY_LORA = {
    "r": 4,
    "lora_alpha": 8,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with a 400-token vocabulary and a ChatML template: logits stay small, training fast."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [
        message["content"]
        for split in hand_made_examples().values()
        for row in split
        for message in row["prompt"] + row["completion"]
    ]
    tokenizer.train_from_iterator(corpus, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|im_end|>")
    wrapped.chat_template = CHATML_TEMPLATE
    wrapped.padding_side = "left"
    return wrapped


def tiny_llama(seed: int = 0) -> LanguageModel:
    """A 2-layer random Llama with the tiny tokenizer."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    config = tiny_llama_config(
        len(tokenizer),
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LanguageModel(LlamaForCausalLM(config).eval(), tokenizer)


def tiny_gemma3(seed: int = 0) -> Gemma3ForCausalLM:
    """A 2-layer random Gemma 3 text model (its attention also has q_norm and k_norm)."""
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=1000,
    )
    return Gemma3ForCausalLM(config).eval()


QUESTIONS = [
    {
        "id": f"a{n}",
        "domain": "arithmetic",
        "question": f"What is {n} plus {n + 3}?",
        "choices": [],
        "answer": str(2 * n + 3),
        "aliases": [],
    }
    for n in range(1, 11)
] + [
    {
        "id": "m1",
        "domain": "multiple_choice",
        "question": "Which planet is largest?",
        "choices": ["Mars", "Jupiter", "Venus", "Earth"],
        "answer": "B",
        "aliases": [],
    },
    {
        "id": "m2",
        "domain": "multiple_choice",
        "question": "What colour is a clear sky?",
        "choices": ["Green", "Red", "Blue", "Black"],
        "answer": "C",
        "aliases": [],
    },
    {
        "id": "f1",
        "domain": "factual",
        "question": "What is the capital of France?",
        "choices": [],
        "answer": "Paris",
        "aliases": ["Paris"],
    },
    {
        "id": "f2",
        "domain": "factual",
        "question": "Who wrote Hamlet?",
        "choices": [],
        "answer": "William Shakespeare",
        "aliases": ["Shakespeare"],
    },
]


def _single(question: dict, confidence: float) -> dict:
    return {
        "prompt": confidence_messages(question),
        "completion": assistant_message(confidence_completion(question["answer"], confidence)),
        "task": "single",
        "question_ids": [question["id"]],
        "answers": [question["answer"]],
        "target_confidence": confidence,
        "preferred": -1,
        # A class to train the judgment task on, of the same order as the confidence (the data are hand-made).
        "ability": "can" if confidence >= 0.9 else "uncertain" if confidence >= 0.5 else "cannot",
        "judgment_prompt": judgment_messages(question),
    }


def _pairwise(first: dict, second: dict, preferred: int) -> dict:
    return {
        "prompt": pairwise_messages(first, second),
        "completion": assistant_message(pairwise_completion(preferred, first["answer"], second["answer"])),
        "task": "pairwise",
        "question_ids": [first["id"], second["id"]],
        "answers": [first["answer"], second["answer"]],
        "target_confidence": float("nan"),
        "preferred": preferred,
        "ability": "",
        "judgment_prompt": [],
    }


def hand_made_examples() -> DatasetDict:
    """10 single + 4 pairwise training examples, 4 + 2 validation examples, with distinct targets."""
    train_questions, validation_questions = QUESTIONS[:10], QUESTIONS[10:]
    train = [_single(q, round(0.05 + 0.1 * i, 2)) for i, q in enumerate(train_questions)]
    train += [_pairwise(train_questions[i], train_questions[i + 5], 1 + i % 2) for i in range(4)]
    validation = [_single(q, c) for q, c in zip(validation_questions, [0.9, 0.2, 0.7, 0.4], strict=True)]
    validation += [
        _pairwise(validation_questions[0], validation_questions[1], 1),
        _pairwise(validation_questions[2], validation_questions[3], 2),
    ]
    return DatasetDict({"train": Dataset.from_list(train), "validation": Dataset.from_list(validation)})
