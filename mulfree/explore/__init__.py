"""Design-space exploration on Dask (``mulfree explore``).

``space`` (the dimensions and their default values per board family), ``estimate`` (the area
formula that prunes points before synthesis), ``tasks`` (one point's work on a worker),
``cache`` (finished results on disk), ``pareto`` (the front and the chosen point), ``run``
(the steps on a cluster) and ``report`` (the files written).
"""
