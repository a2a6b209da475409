"""RL-on-T2I measurement in miniature (CPU): a tiny SFT LM over a training-free mosaic
tokenizer (arm_data PatchColorTokenizer 64px, 8px cells, 4 levels -> 8x8 grid, 64 codes),
then GRPOTrainer with the shapes_t2i reward on train prompts; held-out T2I score before/after."""
import json, sys, time, random
from pathlib import Path
import torch, lightning.pytorch as pl
from arm_core.checkpoint import save_lm, LMCheckpoint, load_lm
from arm_core.config import Config
from arm_core.model import GPT
from arm_core.lightning_module import lm_loss
from arm_core.generation import Engine
from arm_data.formats import ImageTokens, TaskFormatter
from arm_data.pretokenize import PatchColorTokenizer
from arm_data.shapes import ShapesWorld
from arm_data.text_tokenizer import TextTokenizer
from arm_tokenizer.images import pil_to_tensor, tensor_to_pil
from arm_rl.prompts import PromptRecord, ShapesPromptDataModule
from arm_rl.rewards.shapes import ShapesT2IReward
from arm_rl.rl_task import RLTask
from arm_rl.lightning_module import GRPOTrainer

OUT = Path(sys.argv[1]); OUT.mkdir(parents=True, exist_ok=True)
SFT_STEPS, RL_STEPS, N_EVAL = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)

class MosaicVis(torch.nn.Module):
    def __init__(self):
        super().__init__(); self.p = PatchColorTokenizer(64, 8, 4)
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
        self.image_size, self.grid, self.codebook_size = (64, 64), (8, 8), 64
    def encode(self, imgs):
        return self.p.encode(torch.stack([pil_to_tensor(i) for i in imgs]))
    def decode_to_pil(self, codes, grid=None):
        return [tensor_to_pil(x) for x in self.p.decode(codes.cpu())]

LMCheckpoint.load_visual_tokenizer = lambda self, d=None, device="cpu": MosaicVis()
vis = MosaicVis()
t0 = time.time()
world = ShapesWorld("train", 0, 64, 64)
samples = [world[i] for i in range(3000)]
text = TextTokenizer.train([s.caption for s in samples], vocab_size=400)
text.save(OUT / "tt")
layout = text.layout(codebook_size=64, max_grid_h=8, max_grid_w=8)
fmt = TaskFormatter(layout, text)
codes = torch.cat([vis.encode([s.image for s in samples[i:i+500]]) for i in range(0, 3000, 500)])
rng = random.Random(0)
seqs = [fmt.t2i(None if rng.random() < 0.1 else s.caption, ImageTokens(c.tolist(), 8, 8)) for s, c in zip(samples, codes)]
T = max(len(s) for s in seqs)
ids = torch.full((len(seqs), T), layout.pad_id); tgt = torch.full((len(seqs), T), -100)
for i, s in enumerate(seqs):
    x, m = s.as_tensors(); ids[i, :len(x)] = x
    t = torch.where(m, x, torch.full_like(x, -100)); tgt[i, :len(x) - 1] = t[1:]
cfg = Config.from_name("tiny", n_embd=128, n_layer=4, n_head=4, n_query_groups=2, intermediate_size=384,
                       max_seq_len=160).with_vocab(layout.total_size, layout.image_offset, layout.codebook_size,
                                                   text_vocab_size=layout.text_vocab_size)
model = GPT(cfg)
opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95))
sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=SFT_STEPS, pct_start=0.05)
g = torch.Generator().manual_seed(0)
for step in range(SFT_STEPS):
    b = torch.randint(0, len(seqs), (32,), generator=g)
    loss = lm_loss(model(ids[b]), tgt[b])[0]
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
    if step % 50 == 0: print(f"sft {step} loss {loss.item():.3f} {time.time()-t0:.0f}s", flush=True)
save_lm(OUT / "sft", model, cfg, layout=layout, text_tokenizer=OUT / "tt")
print(f"SFT done {time.time()-t0:.0f}s", flush=True)

def evaluate(lm_dir, split, temperature, n=N_EVAL):
    from arm_rl.rollout import RolloutSampler, TaskSampling
    lm = load_lm(lm_dir)
    sm = RolloutSampler(lm.layout, lm.load_text_tokenizer(), vis, {"t2i": TaskSampling(temperature, None, 1.0)})
    w = ShapesWorld(split, 0, 64, 64)
    recs = [PromptRecord("t2i", s.caption, spec=s.spec, check=s.caption_attributes, relations=s.caption_relations,
                         index=i, split=split) for i, s in ((i, w[i]) for i in range(n))]
    scores = []
    for k in range(0, n, 50):
        b = sm.rollout(Engine(lm.model), "t2i", recs[k:k+50], 2, generator=torch.Generator().manual_seed(123 + k))
        scores.append(ShapesT2IReward()(sm.decode(b), b.records))
    return float(torch.cat(scores).mean())

SETS = [("heldout", 0.7), ("heldout", 1.0), ("val", 0.7)]
res = {"sft": {f"{sp}@T{t}": evaluate(OUT / "sft", sp, t) for sp, t in SETS}}
print(json.dumps(res), flush=True)
module = GRPOTrainer(policy_checkpoint=str(OUT / "sft"), group_size=8, beta=0.01, lr=2e-4,
                     tasks={"t2i": RLTask(temperature=0.7, top_k=None, reward=ShapesT2IReward())},
                     export_dir=str(OUT / "rl"), sample_every_n_steps=10)
dm = ShapesPromptDataModule({"t2i": 1.0}, prompts_per_step=4, num_prompts=5000, seed=1)
trainer = pl.Trainer(max_steps=RL_STEPS, accelerator="cpu", logger=pl.loggers.CSVLogger(OUT / "logs"),
                     enable_checkpointing=False, enable_progress_bar=False, log_every_n_steps=1, default_root_dir=OUT)
trainer.fit(module, datamodule=dm)
print(f"RL done {time.time()-t0:.0f}s", flush=True)
res["rl"] = {f"{sp}@T{t}": evaluate(OUT / "rl", sp, t) for sp, t in SETS}
res["settings"] = dict(sft_steps=SFT_STEPS, rl_steps=RL_STEPS, n_eval=N_EVAL, samples_per_prompt=2, group=8, prompts_per_step=4, lr=2e-4, beta=0.01)
(OUT / "results.json").write_text(json.dumps(res, indent=1))
print(json.dumps(res, indent=1), f"{time.time()-t0:.0f}s")
