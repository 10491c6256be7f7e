-- Average and top speed per vehicle and hour of the journey.
SELECT
    deviceid AS vehicle,
    date_trunc('hour', "timestamp") AS hour,
    count(*) AS fixes,
    round(avg(speed), 1) AS avg_speed_kmh,
    round(max(speed), 1) AS max_speed_kmh,
    count_if(speed < 50) AS fixes_below_50_kmh
FROM smartcity.vehicle_data
GROUP BY deviceid, date_trunc('hour', "timestamp")
ORDER BY vehicle, hour
