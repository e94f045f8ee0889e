"""The CloudSnapshot controller: the watch-fed controller, the lifecycle reconciler, the cloud
interface it drives (``external``), and how a claim leads to a disk (``volumes``)."""
