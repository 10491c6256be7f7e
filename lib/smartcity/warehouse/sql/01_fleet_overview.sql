-- The fleet as the warehouse sees it: one row per vehicle, its route, distance and energy used.
SELECT
    deviceid AS vehicle,
    MIN(route) AS route,
    MIN(make) || ' ' || MIN(model) AS vehicle_model,
    MIN(fueltype) AS fuel,
    COUNT(*) AS fixes,
    MIN("timestamp") AS departed,
    MAX("timestamp") AS arrived,
    ROUND(((EXTRACT(EPOCH FROM MAX("timestamp")) - EXTRACT(EPOCH FROM MIN("timestamp"))) / 60.0)::numeric, 0) AS minutes,
    ROUND((MAX(odometer) - MIN(odometer))::numeric, 1) AS km,
    ROUND((MAX(fuellevel) - MIN(fuellevel))::numeric, 1) AS pct_of_tank_used
FROM smartcity.vehicle_data
GROUP BY deviceid
ORDER BY vehicle;
