"""Programs several test files share.

``Q1`` is the README's ``q1.zdf``: the seed's question 1 for device-dax under
``p20`` — a page is mapped and GUP'd, and the driver unbinds; the teardown
step (the last line) breaks I-L2 because nothing holds ``pgmap->ref`` for the
GUP'd page. ``Q1_SIG`` is the signature every engine must find for it.
"""

from zdfuzz.corpus import Signature

Q1 = """\
rules p20
config types=generic
memremap_pages pgmap=0
dev_dax_huge_fault proc=0 addr=0 pfn=1 cpu=0
get_user_pages proc=0 addr=0 flags=0 cpu=1
memunmap_pages pgmap=0 cpu=0
step task=0
step task=0
step task=0
rcu_grace_period
step task=0
step task=0
"""

Q1_SIG = Signature("I-L2", "memunmap_pages", "generic", "p20")
