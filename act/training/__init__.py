"""Training: SFT on gold conversations and ACT's quasi-online DPO (TRL + PEFT, QLoRA when asked).

- `act.training.sft`:         `train_sft(base_dir, records, out_dir, sft, seed=...)`
- `act.training.dpo`:         `train_dpo(base_dir, sft_dir, pairs, records, out_dir, train, seed=..., sampler=...)`,
                              the DPOConfig and the starting/reference policy
- `act.training.act_trainer`: `ActDPOTrainer` (DPOTrainer subclass sampling the current policy
                              every `sample_every` steps; imports TRL)
- `act.training.sampler`:     `OnPolicySampler`, the roles and settings of a sampling round (light)
- `act.training.tokenize`:    TRL-identical pair tokenization plus the user-turn loss mask
- `act.training.checkpoints`: the checkpoint folder outside DVC's outs, its run key, resume
"""
