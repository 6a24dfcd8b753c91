"""Cost: what the box costs, per-window attribution of that cost and its energy, per-request shares.

Money is ``DECIMAL(18, 9)`` (exact to the nano-dollar), energy is ``BIGINT`` millijoules (exact);
both are summed and reconciled, so neither is ever a float. Floats (``*_s``, ``co2e_g``,
``weight``) are for display and ranking only. Unknown is NULL, never 0.

``instance_prices`` -- what this host costs, as configured, from when (one row per change)
    host               socket.gethostname() of the agent (the same name the GPU sampler writes)
    effective_from_ns  wall-clock ns from which this price applies (until the next row's)
    hourly_usd         $/hour of the whole box; NULL when no price is known (then every window's
                       cost is NULL and self-hosted requests stay unpriced: never $0)
    cloud, instance_type, pricing
                       the catalog entry and pricing model (on_demand / spot / committed) it came
                       from, or pricing = 'explicit' for INFERMETER_HOURLY_USD / _GPU_HOUR_USD
    gpu_type, gpu_count  GPUs of the box (catalog, else what the sampler saw)
    region, grid_gco2e_per_kwh, pue
                       for carbon: region's grid intensity and the datacentre PUE applied
    source             human-readable provenance ("catalog aws g6.xlarge on_demand as of 2025-01-15")
    recorded_at_ns     when the agent wrote the row

``cost_windows`` -- one row per host per finalised window; windows are aligned with the sampler
(``[k * interval, (k + 1) * interval)`` in wall-clock ns), so GPU samples sit on their boundaries.
Primary key (host, window_start_ns): re-running attribution replaces rows, it never duplicates.
    window_start_ns, window_end_ns
    hourly_usd            price applied (from instance_prices)
    instance_cost_usd     price x window length, rounded to the nano-dollar *telescopically*:
                          floor(P * (end - from)) - floor(P * (start - from)) in nano-dollars, so any
                          run of consecutive windows also sums to price x length within 1 n$
    usage_cost_usd        sum of the requests' usage_cost_usd: the busy part of the window
    idle_cost_usd         instance_cost_usd - usage_cost_usd: time no request was active
    allocated_cost_usd    sum of the requests' allocation_cost_usd (== instance cost when any
                          request was active, else 0)
    unallocated_cost_usd  instance_cost_usd - allocated_cost_usd: windows no request touched
        Identities, exact for every window:
          usage_cost_usd + idle_cost_usd             == instance_cost_usd
          allocated_cost_usd + unallocated_cost_usd  == instance_cost_usd
    energy_mj             measured GPU energy of the window: sum over physical GPUs of NVML
                          energy-counter deltas between the samples on the window's boundaries,
                          or mean power x length where the counter is missing; NULL without GPU data
    idle_energy_mj        energy_mj - sum of the requests' energy_mj (exact)
    energy_source         'counter', 'power' or 'mixed' (per GPU); NULL without GPU data
    gpu_count             GPUs that contributed energy to this window
    co2e_g                energy_mj x PUE x grid intensity (display); NULL when region unknown
    busy_s                length of the union of the requests' activity inside the window
    requests              requests active in the window
    method                'time' (shares by overlap) or 'tokens' (overlap x the request's tokens
                          per second); 'tokens' falls back to 'time' for a window where any
                          active request has no token count
    finalized_at_ns       when this row was (last) computed

``request_costs`` -- one row per (request, window) it was active in: the request's share.
No primary key (an index over tens of millions of rows costs memory and append speed);
uniqueness of (request_id, host, window_start_ns) holds because attribution replaces whole windows.
    request_id            requests.request_id
    host, window_start_ns the cost_windows row this share belongs to
    overlap_s             seconds of the request inside the window
    weight                the request's fraction of the window's total weight (0..1)
    allocation_cost_usd   share of the whole instance_cost_usd (idle included): sums to the bill
    usage_cost_usd        share of usage_cost_usd (busy time only): what it consumed
    energy_mj             share of (energy_mj - idle_energy_mj), exact millijoules
    gpu_s                 GPU-seconds consumed: busy_s x gpu_count x weight
    co2e_g                energy_mj x PUE x grid intensity (display)
    method                as on the window
    model, tenant, endpoint, operation
                          copied from the request, so cost views group without a join
        Shares are split by largest remainder (ties broken by request_id), so for every window:
          sum(allocation_cost_usd) == allocated_cost_usd
          sum(usage_cost_usd)      == usage_cost_usd
          sum(energy_mj) + idle_energy_mj == energy_mj

How ``requests.cost_usd`` / ``cost_source`` are filled:
    provider   set upstream (the proxy read a cost from the response): kept as is
    catalog    hosted-API model priced at ingest from token prices (input, cached input, output)
    unpriced   hosted-API model with no known price, or unknown tokens: cost_usd stays NULL
    gpu_time   self-hosted request: cost_usd is NULL at ingest and set by attribution to the sum
               of its allocation_cost_usd once its windows are final (NULL while the box has no
               price). The API-equivalent cost (same tokens at a hosted price) is computed by
               the views from the catalog, not stored, because it depends on the catalog.
"""

VERSION = 3
DESCRIPTION = "costs"

STATEMENTS = [
    """
    CREATE TABLE instance_prices (
        host               VARCHAR NOT NULL,
        effective_from_ns  BIGINT NOT NULL,
        hourly_usd         DECIMAL(18, 9),
        cloud              VARCHAR,
        instance_type      VARCHAR,
        pricing            VARCHAR,
        gpu_type           VARCHAR,
        gpu_count          INTEGER,
        region             VARCHAR,
        grid_gco2e_per_kwh DOUBLE,
        pue                DOUBLE,
        source             VARCHAR,
        recorded_at_ns     BIGINT NOT NULL,
        PRIMARY KEY (host, effective_from_ns)
    )
    """,
    """
    CREATE TABLE cost_windows (
        host                 VARCHAR NOT NULL,
        window_start_ns      BIGINT NOT NULL,
        window_end_ns        BIGINT NOT NULL,
        hourly_usd           DECIMAL(18, 9),
        instance_cost_usd    DECIMAL(18, 9),
        usage_cost_usd       DECIMAL(18, 9),
        idle_cost_usd        DECIMAL(18, 9),
        allocated_cost_usd   DECIMAL(18, 9),
        unallocated_cost_usd DECIMAL(18, 9),
        energy_mj            BIGINT,
        idle_energy_mj       BIGINT,
        energy_source        VARCHAR,
        gpu_count            INTEGER,
        co2e_g               DOUBLE,
        busy_s               DOUBLE NOT NULL,
        requests             INTEGER NOT NULL,
        method               VARCHAR NOT NULL,
        finalized_at_ns      BIGINT NOT NULL,
        PRIMARY KEY (host, window_start_ns)
    )
    """,
    """
    CREATE TABLE request_costs (
        request_id          UBIGINT NOT NULL,
        host                VARCHAR NOT NULL,
        window_start_ns     BIGINT NOT NULL,
        overlap_s           DOUBLE NOT NULL,
        weight              DOUBLE NOT NULL,
        allocation_cost_usd DECIMAL(18, 9),
        usage_cost_usd      DECIMAL(18, 9),
        energy_mj           BIGINT,
        gpu_s               DOUBLE,
        co2e_g              DOUBLE,
        method              VARCHAR NOT NULL,
        model               VARCHAR,
        tenant              VARCHAR,
        endpoint            VARCHAR,
        operation           VARCHAR
    )
    """,
]
