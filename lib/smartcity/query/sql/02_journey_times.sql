-- Each vehicle's trip: its route, when it left and arrived, how far and how fast it went.
-- Average speed is km * 3600 / seconds, doubles throughout: seconds / 3600.0 would be decimal
-- arithmetic on Athena and Trino, rounded to the literal's one decimal (2.4 h for 2.44 h).
SELECT
    deviceid AS vehicle,
    arbitrary(route) AS route,
    arbitrary(make) || ' ' || arbitrary(model) AS vehicle_model,
    arbitrary(fueltype) AS fuel,
    min("timestamp") AS departed,
    max("timestamp") AS arrived,
    date_diff('minute', min("timestamp"), max("timestamp")) AS minutes,
    round(max(odometer) - min(odometer), 1) AS km,
    round(3600 * (max(odometer) - min(odometer)) / date_diff('second', min("timestamp"), max("timestamp")), 1)
        AS avg_speed_kmh,
    round(max(speed), 1) AS max_speed_kmh
FROM smartcity.vehicle_data
GROUP BY deviceid
ORDER BY vehicle
