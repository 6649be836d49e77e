"""Draft generator for chapter 17 (ZH). Reads the English notebook book/en/17-everything-on-one-task.ipynb and writes
book/zh/17-everything-on-one-task.ipynb: the code cells copied from English (outputs included) with only their comments
translated (COMMENTS), every markdown cell replaced, in order, by its Chinese text (ZH_MARKDOWN).

Run it after every change to the English chapter (`python scripts/_draft_ch17.py && python scripts/_draft_ch17_zh.py`).
It stops when the markdown cells no longer pair up (their number, their headings' numbers, their glued values and
citations) and warns when a comment has no translation or when an English cell differs from the one noted beside its
translation (its opening and a hash of the whole cell: the English prose changed, re-check that entry, then paste the
note the warning prints). `--notes` prints the notes of every English markdown cell. Removed before the chapter lands
on main."""
import copy
import hashlib
import io
import re
import sys
import tokenize
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NAME = "17-everything-on-one-task"
EN = ROOT / "book" / "en" / f"{NAME}.ipynb"
ZH = ROOT / "book" / "zh" / f"{NAME}.ipynb"
COLAB = f"https://colab.research.google.com/github/model-migration/model-migration-book/blob/main/book/zh/{NAME}.ipynb"

# English comment (the text after `#`, stripped) -> Chinese. Code, strings and docstrings stay as they are.
COMMENTS = {
    "the frozen body read the other way: a probe on the [CLS] state, the position that head only's pooler reads":
        "换一种方式读取冻结的主体：在 [CLS] 状态上拟合探测，只训练分类头时池化层读的正是这个位置",
    "the full profile (Colab): another model and device, so another key; nothing to download or re-run":
        "full 档位（Colab）：模型和设备都不同，键也就不同；既不下载，也不重新运行",
    "in Colab: install mtlib (everything else is preinstalled)": "在 Colab 中：安装 mtlib（其余依赖已预装）",
    "the records shipped inside mtlib: mtlib/results/leaderboard.jsonl": "随 mtlib 发布的记录：mtlib/results/leaderboard.jsonl",
    "the budgets at which every method has all its seeds": "每种方法的随机种子都已齐全的那些预算",
    "the rule on the validation accuracy instead of the loss (the first seed; ties go to the smaller rate)":
        "改按验证准确率而不是损失来应用规则（第一个随机种子；平局时取较小的学习率）",
    'one point of accuracy: "stopped rising" when the whole interval lies within it':
        "一个百分点的准确率：整个区间都落在它以内，才判定为“已停止上升”",
    "runs at chance (diverged) left out of the right panel": "停在随机水平（发散）的运行不画进右图",
    "the shortfall the goal allows": "目标允许的落后幅度",
    "our closest method, the published setting and result, published share of full (%), trainable %":
        "我们最接近的方法、已发表的设置与结果、已发表结果占全参数微调的百分比、可训练参数百分比",
    "the whole pipeline on a tiny configuration, into a temporary store": "在很小的配置上跑完整个流程，写入临时结果库",
    "the stored BitFit run at 50 steps whose accuracy is the median of its three seeds":
        "结果库中 50 步的 BitFit 运行：三个随机种子里准确率居中的那一次",
    "millions: rank 16 on every linear layer of a 32-layer Llama-style 7B model (about 1.25M per layer)":
        "单位为百万：在 32 层 Llama 式 7B 模型的每个线性层上用秩 16（每层约 1.25M）",
    "the book's rule, on the stored losses": "本书的规则，作用于存储的损失",
    "under the same key, the re-run is the stored run": "键相同时，重新运行得到的就是存储的那次运行",
    "every method, every budget, three seeds": "每种方法、每个预算、三个随机种子",
}

# One entry per markdown cell of the English notebook, in order; above each, the English cell it translates: its first
# 60 characters and a hash of the whole cell (`# EN: '...' sha1`, read back by this script to warn when the English
# cell has changed since). One paragraph per line.
ZH_MARKDOWN = [
    # EN: '# 17. Everything on one task: which method, and how long?\n\nP' d0fb838156
    rf"""
# 17. 同一任务上的所有方法：选哪种，训练多久？

第二部分让每种方法现场训练 50 步，还不到 SST-2 训练句子的四分之一轮，好让每一章在笔记本电脑上几分钟就能跑完。在这个预算下，几乎没有哪种方法能与冻结探测拉开差距，读者带着来读这本书的那个问题（选哪种方法、训练多久）也就悬而未决。本章用一个**结果库**（results store）来回答它：第二部分的每一种技术，连同几个对照（全参数微调、只训练分类头、冻结探测），都在完整的 SST-2 数据划分上（训练集 {{glue:text}}`ch17_n_train:,` 句、验证集 {{glue:text}}`ch17_n_val:,` 句、测试集 {{glue:text}}`ch17_n_test:,` 句）分别训练 50、200 和 400 步；每种方法先按同一条规则选出学习率，再用三个随机种子运行；每次运行都测量了它的开销，以及编码器主体遗忘了多少。这些运行共用了 {{glue:text}}`ch17_hours:.1f` 个 CPU 小时，由 `make leaderboard` 一次算好，随 mtlib 一起发布。因此本章在任何机器上都只需几秒就能读出它们，并把其中一次重新运行，以表明结果库里存的正是代码算出的结果。

[![Open In Colab](../_static/colab-badge.svg)]({COLAB}) · [English version](../en/{NAME}.ipynb)
""",
    # EN: '## 17.1 The store: one record per run\n\nA record is one train' 3e294407d5
    r"""
## 17.1 结果库：每次运行一条记录

一条记录就是一次训练运行。它的**键**（key）包含决定结果的一切：方法及其完整配置、学习率、随机种子、步数预算、训练配方、数据（每个文件的哈希值和抽样）、遗忘探测的设置、检查点及其文件的哈希值、运行档位、精度、设备、CPU 线程数和指令集、各个库的版本，以及一个运行格式版本号（每当代码的改动会改变结果，就手动把它加一）。它的**值**（values）是这次运行测得的结果；它的**来源**（provenance）记录它在哪里、什么时候运行。记录按完整的键查找，所以在其他条件下算出的结果绝不会被悄悄地拿来复用。
""",
    # EN: 'The store holds {glue:text}`ch17_records` records, computed ' a6c79497be
    r"""
结果库中共有 {glue:text}`ch17_records` 条记录，在 {glue:text}`ch17_cpus` 上以 {glue:text}`ch17_threads` 个 CPU 线程、float32 精度算出。`test_correct` 记下这次运行对每个测试句子分类是否正确，这样两种方法就能在同一批句子上比较（17.4 节）。如果换一个键向结果库索取同一次运行，比如换一个 torch 版本，它会拒绝，并指出哪些地方不同：
""",
    # EN: '## 17.2 One rule for the learning rate\n\nA comparison of meth' 7c3c35c430
    r"""
## 17.2 学习率只用一条规则

方法之间的比较，只有在每种方法拿到的学习率都公平时才公平。结果库中的每一行都遵循本书的规则（第 6 章把它写成了 `mtlib.tuning.rates`）：用第一个随机种子，在至少三个学习率（相邻两个相差半个数量级）组成的网格上逐一训练，保留**验证损失最低**的那个；如果它位于网格的边缘，先试一试边缘之外的下一个学习率，再确定选择；然后用选定的学习率运行其余的随机种子。看验证损失而不看准确率，是因为在 {glue:text}`ch17_n_val:,` 个验证句子上，准确率以 {glue:text}`ch17_val_step:.2f` 个百分点为单位跳动，平局很常见；损失还能看出错误的答案错得有多自信。
""",
    # EN: 'The rates each method tried at each budget, with the first s' d66f3856bd
    r"""
下表列出每种方法在每个预算下试过的学习率，以及第一个随机种子的验证损失；选中的学习率标有星号。第一轮网格的最佳值落在边缘时，网格会扩展（“grown”一列：增加了几个学习率），最多扩展四次：
""",
    # EN: 'In {glue:text}`ch17_grown` of the {glue:text}`ch17_cells` me' 6dc66a8e82
    r"""
在 {glue:text}`ch17_cells` 个“方法 × 预算”组合中，有 {glue:text}`ch17_grown` 个组合的第一轮网格最佳值落在边缘，网格因而扩展；在脚本允许的扩展次数用完之后，仍有 {glue:text}`ch17_at_edge` 个选择位于边缘，表中已把它们标出（“at edge”一列）。如果规则看的是验证准确率而不是损失，会有 {glue:text}`ch17_changed_by_accuracy` 个组合的选择发生变化（练习 2）。
""",
    # EN: '## 17.3 Accuracy against budget\n\nTest accuracy at each budge' a31ed85cdf
    r"""
## 17.3 准确率随预算的变化

下图是各个预算下的测试准确率：折线是选定学习率下三个随机种子的均值，每个随机种子画成一个点。每个预算上的点都来自单独的运行，各有自己的学习率和学习率调度（先预热，再在预算用完时衰减到零），而不是同一次运行的学习曲线上的一点。冻结探测是每种训练方法都必须越过的那条线：它是在预训练编码器主体的平均池化状态上训练的逻辑回归，其 $C$ 在验证集上选定。
""",
    # EN: 'Two controls frame every row. Full fine-tuning reaches {glue' 73a6ef29cb
    r"""
有两个对照为每一行定下框架。全参数微调在 400 步时达到 {glue:text}`ch17_full_top:.3f`。只训练输出头（在冻结的主体上训练池化层和新的分类器）达到 {glue:text}`ch17_head_top:.3f`，而冻结探测是 {glue:text}`ch17_probe:.3f`：两者读的都是冻结的主体，但只训练输出头读的是 `[CLS]` 位置上的状态，而 all-MiniLM-L6-v2 是作为句子编码器训练的，它的句向量是各词元状态的平均，冻结探测读的正是这个平均。同样的逻辑回归改读冻结的 `[CLS]` 状态，得分为 {glue:text}`ch17_cls_probe:.3f`：差距主要来自读取的位置，而不是分类器。一种只在池化层之上训练分类器的参数高效方法（peft 的序列分类设置就是这样，结果库中的运行也是），是从两种读法中较弱的那一种出发的。
""",
    # EN: 'Did every run train? The training loss of each method at the' b41603877b
    r"""
每次运行都真的训练起来了吗？下图是每种方法在最长预算下的训练损失：先对各随机种子取均值，再做 20 步的滑动平均：
""",
    # EN: "## 17.4 How close to full fine-tuning, and when\n\nThe seeds' " 66af108498
    r"""
## 17.4 离全参数微调有多近，多少步能达到

随机种子之间的波动说明一种方法的准确率在不同运行之间会变动多少；而一种方法是否胜过另一种，则要在同样的测试句子上回答。下表给出在相同预算下与全参数微调的差值（单位为百分点）和 95% 自助法区间。这个区间对两种噪声来源都做重抽样：每种方法的三个随机种子，以及 {glue:text}`ch17_n_test:,` 个测试句子。两种方法共用这些测试句子，每个句子本身的难易因而相互抵消（`results.seeds_and_sentences`；第 7 章的区间只对句子重抽样，某个随机种子训练崩溃时，这样的区间是看不出来的）。接着是与冻结探测的同样比较：
""",
    # EN: 'Read the two tables as a practitioner would. Of the {glue:te' a0d4660cdf
    r"""
像实践者那样读这两张表。除全参数微调之外训练过的 {glue:text}`ch17_n_trained` 种方法中，50 步时有 {glue:text}`ch17_beat_probe_50` 种超出噪声地胜过冻结探测（整个区间都在零以上），{glue:text}`ch17_below_probe_50` 种低于它；200 步时胜过它的有 {glue:text}`ch17_beat_probe_200` 种，400 步时有 {glue:text}`ch17_beat_probe_400` 种。与同一预算下的全参数微调相比，50 步时有 {glue:text}`ch17_tie_full_50` 种方法落在噪声之内，200 步时 {glue:text}`ch17_tie_full_200` 种，400 步时 {glue:text}`ch17_tie_full_400` 种；到 400 步仍低于它的有 {glue:text}`ch17_below_full_400` 种。
""",
    # EN: 'Has full fine-tuning stopped rising? The store also holds it' ea423ecc97
    r"""
全参数微调是否已经不再上升？结果库里还有它训练 800 步（3.7 轮）的运行，学习率按同一条规则选定。下面是它在 800 步下试过的每个学习率：
""",
    # EN: 'At 800 steps full fine-tuning reaches {glue:text}`ch17_full_' eb5959b505
    r"""
训练 800 步时，全参数微调达到 {glue:text}`ch17_full_800:.3f`，400 步时为 {glue:text}`ch17_full_400:.3f`（差值 {glue:text}`ch17_plateau_difference:+.1f` 个百分点，95% 区间为 {glue:text}`ch17_plateau_low:+.1f` 到 {glue:text}`ch17_plateau_high:+.1f`）。我们设定的检验是：整个区间都落在一个百分点以内，才算停止上升；按这个检验，全参数微调{glue:text}`ch17_plateau_verdict_zh`。表中还显示了长预算的一个陷阱：随着训练继续，模型越来越自信，少数高置信度的错误抬高了验证损失，而准确率仍在上升，于是按损失选择时会偏向较小的学习率（这里是 {glue:text}`ch17_lr_800`）。下面的比较都在 400 步下进行：在这个预算下，每种方法的运行都已齐全；比较的对象是同一预算下的全参数微调。
""",
    # EN: '## 17.5 What each method costs\n\nAccuracy is half the answer;' 8268363471
    r"""
## 17.5 每种方法的开销

准确率只是答案的一半，另一半是方法对机器的要求。可训练参数决定了每个任务要在共享模型之上增加多少东西，也决定了优化器要占用多少内存；一次训练运行的峰值内存（在运行开始前已分配的内存之外）和每一步的耗时，决定了它能否装得下、要跑多久。每步耗时不取自结果库中的运行，而是另行测量：在一台空闲的机器上，在同一个进程里把各种方法并排计时（`make leaderboard ARGS=--time`），因为结果库中的运行本身可能与其他任务共用了 CPU。同一次运行还测量了推理的开销：在各方法的模块就位（未合并）时，对一批 32 个测试句子做一次前向计算的耗时。
""",
    # EN: '## 17.6 Forgetting\n\nA method that changes the body can lose ' 5cb823629e
    r"""
## 17.6 遗忘

改动编码器主体的方法，可能让主体丢掉它原本掌握的东西。结果库对每次运行都用同样的方式测量遗忘（`mtlib.forgetting`；第 12 章和第 13 章也会用到它）：针对另一项任务，即问题分类（TREC，六个类别），在训练前、后主体的平均池化状态上各拟合一个线性探测，其 $C$ 只在预训练的主体上选定一次。遗忘量就是这个探测在训练前的测试准确率减去训练后的测试准确率，单位为百分点。它问的是：一个新的分类头还能从主体中读出什么。这既不是 Biderman 等人测量的东西（调优后的模型自身在源领域任务上的得分下降了多少），也不是通用文本上的语言模型损失（我们的编码器没有训练过的语言模型头，见第 4 章）。不改动主体的方法，只要把它的模块去掉，就什么也不会遗忘；但结果库对每种方法都是在模块装着的状态下测量的，和部署后的模型运行时一样。
""",
    # EN: 'At the chosen rates, the forgetting of every method lies wit' 22e9e489ed
    r"""
在选定的学习率下，每种方法的遗忘量都在零附近、大约一个随机种子标准差（{glue:text}`ch17_forgetting_sd:.1f` 个百分点）的范围之内。遗忘最多的那些运行，用的都是规则没有选中的学习率：其中 {glue:text}`ch17_most_forgetting_run`（方法、步数和学习率）这次运行丢掉了 {glue:text}`ch17_most_forgetting:.1f` 个百分点，在 SST-2 上却仍达到 {glue:text}`ch17_most_forgetting_acc:.3f`。在这里，遗忘多少与其说取决于方法，不如说取决于学习率和训练时长。
""",
    # EN: '## 17.7 The goals, measured\n\nBefore the store was filled we ' 31c48dee26
    r"""
## 17.7 目标达成了吗

在填充结果库之前，我们定下了三个目标，都以 400 步下的三随机种子均值来衡量（400 步是每种方法都有运行的最长预算，全参数微调在那里是否已停止上升，由 17.4 节检验）：LoRA 至少达到全参数微调的 99%，可训练参数至多占 0.5%；BitFit 至少 97%，至多 0.2%；适配器至少 99%，至多 3%。与全参数微调之差的整个 95% 区间都高于允许的落后幅度时，目标算作**达成**（met）；整个区间都低于它时，算作**未达成**（missed）；其余情况为**未定**（not decided）。此外，参数预算也必须满足。
""",
    # EN: '## 17.8 Our numbers beside the published ones\n\nThe published' d43f143377
    r"""
## 17.8 我们的数字与已发表的数字

已发表的数字来自更大的模型和长得多的训练；它们给出的是预期，而不是我们的 CPU 运行必须达到的指标。应当能延续下来的是整体的形态：每种方法离全参数微调有多近，用了多大比例的参数。
""",
    # EN: "Read the published column with its settings. Hu et al.'s ful" 97f40572ee
    r"""
读已发表的那一列，要连同它的设置一起读。Hu 等人列出的全参数微调数字是 RoBERTa 论文自己发表的结果，并不是他们自己跑出来的；Houlsby 等人的数字是测试服务器上的得分，他们的 3.6% 涵盖了从 8 到 256 的各种适配器尺寸。peft 的方法比较（取其在提交 5d602fd 时的结果；每次重跑都会有所变化）用的是如今大多数读者会遇到的场景：一个 30 亿参数的解码器用 5,000 步学习数学。在那里，LoRA 与全参数微调持平；提示微调从随机初始化出发只达到 0.057，从词表初始化则达到 0.343；而全参数微调比 LoRA 遗忘得更少（全参数微调之后，通用文本上的损失上升 0.030 nat，LoRA 之后上升 0.050 nat）。Biderman 等人 {cite}`biderman2024lora` 用 7B 模型在代码和数学上看到的是另一种权衡：在常见的低秩设置下，LoRA 学到的明显少于全参数微调，却更多地保留了模型在新领域之外的能力。这是学习与遗忘之间的一种取舍，谈不上哪一方胜出；全参数微调的权重变化，其秩比典型的 LoRA 配置大 10 到 100 倍。
""",
    # EN: '## 17.9 One record, re-run\n\nThe store is only worth reading ' eb2abb1995
    r"""
## 17.9 重新运行一条记录

结果库只有在它的记录确实是代码算出的结果时才值得一读。在 `local` 档位下，如果机器的键与结果库中的一致，下面的单元格会把一次已存储的运行重新训练一遍，并精确比较除时间和内存之外的每一个值：这里的 CPU 运行是确定性的。它会把 CPU 线程数设为结果库中的值（键里记着这个数）。在 `smoke` 档位下（以及离线预演中），它在一个很小的配置上把整个流程跑一遍，写入一个临时的结果库。换一台机器（Colab 的 GPU，或者另一种 CPU），键就不同了，结果库会指出哪些字段不同。
""",
    # EN: '## 17.10 Choosing a method\n\nWhat our measurements and the li' 576108611e
    r"""
## 17.10 如何选择方法

我们的测量和文献给出的建议，按起决定作用的约束排列如下：

- **几分钟内就要一条基线。** 用冻结探测：梯度不经过主体，只在缓存的特征上训练逻辑回归，这里得到 {glue:text}`ch17_probe:.3f`。一种训练方法比它高出的幅度，要超过自己在随机种子之间的波动，才对得起它的开销；而在 50 步时，有好几种方法做不到（17.4 节）。
- **完全没有标签。** 这张表里的方法都用不上：这里的每种方法，包括探测在内，都要从标签中学习。可以对模型做零样本提示（第 10 章），标注几百个样本，或者在该领域的无标签文本上继续预训练（第 4 章）。
- **内存是瓶颈。** 用 LoRA：它的优化器只为少量可训练参数保存状态（这里的峰值内存为 {glue:text}`ch17_peak_lora:.0f` MiB，全参数微调为 {glue:text}`ch17_peak_full:.0f` MiB，都不含权重本身）。QLoRA 还把冻结的权重以 4 比特存储（第 9 章）。
- **同一个基础模型服务多个任务。** 凡是不改动主体的方法，每个任务都只需保存一个小文件：LoRA（{glue:text}`ch17_saved_lora:.1f` MiB，全参数微调为 {glue:text}`ch17_saved_full:.0f` MiB）、BitFit、适配器、提示都是如此。让各个模块保持独立，按请求切换；把某个模块合并进权重，就不能再切换了。
- **推理不能有任何额外开销。** 用全参数微调；或者把 LoRA、DoRA 合并进权重；或者用只改动偏置的 BitFit。适配器会增加层，提示会在每次调用时增加词元。
- **在给定预算内追求最高的准确率。** 看 17.4 节的表：哪种方法能达到全参数微调的 99%，在什么预算下达到。

## 17.11 读者常问的问题

- **秩和 alpha 取多少？** 在查询投影和值投影上用秩 8，这是 Hu 等人对 RoBERTa 的设置，也是我们的设置（他们的论文写的是 $\alpha = 8$，代码仓库里的脚本用的是 16，我们用的是后者）。LoRA 把更新按 $\alpha / r$ 缩放；固定 $\alpha$ 时，秩越大，每个方向上迈的步子越小，所以 Hu 等人改变 $r$ 时无需重新调整学习率。如果改变了 $\alpha / r$，就要重新选择学习率（第 9 章）。
- **学习率取多少？** 每当方法或预算改变，都按一条写明的规则重新选择（17.2 节）。从另一种方法借来的学习率，单凭它自己就可能左右比较的结果。
- **训练多少步？** 训练到全参数微调的验证准确率不再上升为止；17.4 节测量了在这个任务上它在哪里停下。
- **合并还是不合并？** 只服务一个任务、又不想增加延迟，就合并；要在同一个主体上切换任务，就让模块保持独立。
- **QLoRA 需要多少内存？** 下面为一个 7B 模型算了出来。
- **用提示类方法还是 LoRA？** 提示微调的软提示只有几千个数。Lester 等人发现，在 SuperGLUE 上，T5 要到 110 亿参数时，提示微调才追平全参数微调；模型较小时，初始化很要紧（从词表或类别标签初始化，而不是随机初始化）。P-tuning v2 在每一层都放入提示。17.4 节在我们的编码器上比较了这两种方法。
- **全参数微调什么时候胜出？** 当新任务或新领域离模型见过的内容很远，又有足够的数据可学的时候：Biderman 等人发现，在代码和数学上，全参数微调学到的更多。
- **在 CPU 上用 float32 还是 bfloat16？** 只有 CPU 原生支持 bfloat16 计算（AVX512-BF16 或 AMX）时，bfloat16 自动混合精度才能把每步耗时减半；否则它靠软件模拟，在填充这个结果库的机器上（没有这类指令）每步慢了约 25 倍。结果库用 float32 训练，精度也记在键里：用 bfloat16 算出的记录是另一次运行。
""",
    # EN: '## Check\n\nThe store is complete at every budget, each chosen' 4cf6fe6adf
    r"""
## 检查

结果库在每个预算下都是完整的；每个选定的学习率，都正是本书的规则（第 6 章）从试过的学习率中选出的那个；准确率与逐句的结果相互一致；重新运行的记录复现了它存储的值。
""",
    # EN: '## Pitfalls\n\n- **A leaderboard without a rate rule.** Method' 5f6b215b32
    r"""
## 常见陷阱

- **没有学习率规则的排行榜。** 所有方法共用同一个学习率时，排名反映的是这个学习率对各种方法合适到什么程度。要在验证数据上为每种方法分别选择学习率，说明是怎么选的，并检查选中的学习率不在网格的边缘。
- **长预算下的验证损失。** 训练后期，少数高置信度的错误会抬高验证损失，而准确率仍在上升，这时按损失选择的规则就会偏向较小的学习率（17.4 节）。两者都要看。
- **只用一个随机种子，或者区间只对句子重抽样。** 一个随机种子崩溃到随机猜测的水平，就能把三随机种子的均值拉动好几个百分点；给方法排名之前，随机种子和句子都要重抽样。
- **换了键的结果。** 换一个 torch 版本、精度、线程数或指令集得到的数字，就是另一个实验；结果库会拒绝它，并指出哪些字段不同。
- **与其他任务共用机器时测的时间。** 在双核机器上，两个各自占满两个核心的任务会让彼此的速度都减半；要在空闲的机器上把各方法的每步耗时并排测量。

## 练习

1. 哪些方法在 50 步内就能达到全参数微调准确率的 97%，哪些要到 400 步？

   ```{dropdown} 答案
   17.4 节表格中的“steps to 97%”一列根据结果库回答了这个问题；有 {glue:text}`ch17_n_rising` 种方法从 200 步到 400 步仍有超出噪声的提升，所以对它们来说，400 步还不是平台。
   ```

2. 改按验证准确率而不是验证损失来选择学习率。哪些选择会变？

   ```{dropdown} 答案
   17.2 节的代码单元格根据结果库中第一个随机种子的运行算出了答案：{glue:text}`ch17_cells` 个选择中有 {glue:text}`ch17_changed_by_accuracy` 个会改变。只有 {glue:text}`ch17_n_val:,` 个验证句子时，两个学习率的得分常常只差几个句子，准确率分不出高下，损失却可以。
   ```

3. 第一个随机种子之后的各个随机种子，用的是根据第一个随机种子的运行选出的学习率。第一个随机种子的准确率是否偏高？

   ```{dropdown} 答案
   比较 `summary` 中的“test accuracy”和“later seeds”两列：第一个随机种子的学习率之所以被选中，是因为它的验证损失最低，它的测试准确率也沾了几分这份运气。在结果库的所有组合上，后续随机种子的均值与三随机种子均值相差 {glue:text}`ch17_later_minus_all:+.2f` 个百分点。
   ```

4. 一位读者有一个 7B 模型、一块 24 GB 的 GPU 和四个任务。该用哪种方法？

   ```{dropdown} 答案
   全参数微调不算激活值就需要大约 {glue:text}`ch17_mem7b_full:.0f` GiB：无法实现。在 16 比特的冻结权重上用 LoRA，大约需要 {glue:text}`ch17_mem7b_lora:.1f` GiB，装得下，批不大时还能给激活值留出空间；QLoRA 大约需要 {glue:text}`ch17_mem7b_qlora:.1f` GiB，能留出空间处理更长的序列。每个任务一个 LoRA 模块，以 16 比特存储每个约 {glue:text}`ch17_lora7b_mb:.0f` MB，在同一个基础模型上切换。
   ```

## 参考文献

LoRA {cite}`hu2022lora`；DoRA {cite}`liu2024dora`；QLoRA {cite}`dettmers2023qlora`；适配器 {cite}`houlsby2019adapters,pfeiffer2021adapterfusion`；BitFit {cite}`benzaken2022bitfit`；提示微调 {cite}`lester2021power`；P-tuning v2 {cite}`liu2022ptuning`；分层学习率与逐层解冻 {cite}`howard2018ulmfit`；LoRA 与全参数微调在遗忘上的比较 {cite}`biderman2024lora`；TREC {cite}`li2002trec`；SST-2 {cite}`socher2013sst`。

```{bibliography}
:filter: docname in docnames
```
""",
]

ROLE = re.compile(r"\{(glue(?::\w+)?|cite(?::\w+)?)\}`([^`]*)`")
HEADING = re.compile(r"^(#{1,6})\s+(\d+(?:\.\d+)*\.?)?", re.MULTILINE)


def roles(text: str) -> tuple[set, set]:
    """The glue roles (role, name and format, e.g. ('glue:text', 'ch17_n_val:,')) and the cited keys of a cell."""
    glue, cite = set(), set()
    for role, content in ROLE.findall(text):
        if role.startswith("glue"):
            glue.add((role, re.sub(r"_(en|zh)(?=[:}]|$)", "", content.strip())))
        else:
            cite |= {key.strip() for key in content.split(",") if key.strip()}
    return glue, cite


def heading_numbers(text: str) -> list[tuple[int, str]]:
    """(level, number) of every heading outside code fences: '## 17.1 ...' -> (2, '17.1'), '## Check' -> (2, '')."""
    outside, fence = [], False
    for line in text.splitlines():
        if re.match(r"^ {0,3}(```|~~~)", line):
            fence = not fence
        elif not fence:
            outside.append(line)
    return [(len(h), (n or "").rstrip(".")) for h, n in HEADING.findall("\n".join(outside))]


def translate_comments(source: str, missing: list) -> str:
    """The cell with every comment found in COMMENTS translated; everything else unchanged, byte for byte."""
    lines = source.split("\n")
    python = "\n".join("" if l.lstrip().startswith(("!", "%")) else l for l in lines)  # IPython magics aside
    try:
        comments = [tok.start for tok in tokenize.generate_tokens(io.StringIO(python).readline)
                    if tok.type == tokenize.COMMENT]
    except (tokenize.TokenError, IndentationError, SyntaxError) as err:
        sys.exit(f"cannot tokenize a code cell ({err}):\n{source}")
    for row, col in comments:
        line = lines[row - 1]
        text = line[col:].lstrip("#").strip()
        if text in COMMENTS:
            lines[row - 1] = f"{line[:col]}# {COMMENTS[text]}"
        elif text:
            missing.append(text)
    return "\n".join(lines)


def note(english: str) -> str:
    """The note that stands above an entry of ZH_MARKDOWN: the English cell's first 60 characters and its hash."""
    return f"# EN: {english[:60]!r} {hashlib.sha1(english.encode('utf-8')).hexdigest()[:10]}"


def noted() -> list[str]:
    """The `# EN: '...' hash` notes above the entries of ZH_MARKDOWN, in order."""
    return re.findall(r"^    (# EN: .+)$", Path(__file__).read_text(encoding="utf-8"), re.MULTILINE)


def main() -> None:
    en = nbformat.read(EN, as_version=4)
    zh = copy.deepcopy(en)
    markdown = [c for c in zh.cells if c.cell_type == "markdown"]
    if "--notes" in sys.argv:
        print("\n".join(note(c.source) for c in markdown))
        return
    assert len(ZH_MARKDOWN) == len(markdown), (
        f"ZH_MARKDOWN has {len(ZH_MARKDOWN)} entries, the English notebook {len(markdown)} markdown cells: "
        "add, remove or move entries to match.")
    notes = noted()
    assert len(notes) == len(ZH_MARKDOWN), f"{len(notes)} `# EN:` notes for {len(ZH_MARKDOWN)} entries"
    changed, problems = [], []
    for k, (cell, text, old) in enumerate(zip(markdown, ZH_MARKDOWN, notes)):
        english, chinese = cell.source, text.strip("\n")
        if note(english) != old:
            changed.append(f"  markdown cell {k}:\n    was {old}\n    now {note(english)}")
        if roles(english) != roles(chinese):
            (ge, ce), (gz, cz) = roles(english), roles(chinese)
            problems.append(f"markdown cell {k} ({english[:40]!r}): glue only in EN {sorted(ge - gz)}, only in ZH "
                            f"{sorted(gz - ge)}; cite only in EN {sorted(ce - cz)}, only in ZH {sorted(cz - ce)}")
        if heading_numbers(english) != heading_numbers(chinese):
            problems.append(f"markdown cell {k}: headings {heading_numbers(english)} in EN, "
                            f"{heading_numbers(chinese)} in ZH")
        cell.source = chinese
    if changed:
        print("warning: English markdown cells changed since their translation (re-check each entry, then paste the "
              "new `# EN:` note above it):", *changed, sep="\n")
    assert not problems, "the Chinese cells do not pair up with the English ones:\n" + "\n".join(problems)
    first = markdown[0].source
    assert f"[![Open In Colab](../_static/colab-badge.svg)]({COLAB})" in first and f"(../en/{NAME}.ipynb)" in first

    missing = []
    for cell in zh.cells:
        if cell.cell_type == "code":
            cell.source = translate_comments(cell.source, missing)
    if missing:
        print("warning: comments without a translation (left in English; add them to COMMENTS):")
        print("\n".join(f"  # {text}" for text in dict.fromkeys(missing)))
    used = {line.split("#", 1)[1].strip() for c in en.cells if c.cell_type == "code" for line in c.source.splitlines()
            if "#" in line}
    unused = [text for text in COMMENTS if text not in used]
    if unused:
        print("note: COMMENTS entries no longer in the English code:", *unused, sep="\n  ")
    nbformat.write(zh, ZH)
    print("wrote", ZH.relative_to(ROOT), len(zh.cells), "cells")


if __name__ == "__main__":
    main()
