-- Hour by hour: how fast the fleet moved and what the weather was doing.
WITH speed AS (
    SELECT DATE_TRUNC('hour', "timestamp") AS hour, COUNT(*) AS fixes, AVG(speed) AS avg_speed
    FROM smartcity.vehicle_data
    GROUP BY 1
),
weather AS (
    SELECT
        DATE_TRUNC('hour', "timestamp") AS hour,
        AVG(temperature) AS avg_temp,
        MAX(precipitation) AS max_rain,
        SUM(CASE WHEN weathercondition = 'Rain' THEN 1 ELSE 0 END) AS rainy_reports
    FROM smartcity.weather_data
    GROUP BY 1
)
SELECT
    s.hour,
    s.fixes,
    ROUND(s.avg_speed::numeric, 1) AS avg_speed_kmh,
    ROUND(w.avg_temp::numeric, 1) AS avg_temp_c,
    ROUND(w.max_rain::numeric, 2) AS max_rain_mm_h,
    w.rainy_reports
FROM speed AS s
LEFT JOIN weather AS w ON w.hour = s.hour
ORDER BY s.hour;
